"""Demo: the whole pipeline on the bundled feed files, delivered over real SMTP to an embedded Maildir server.

Takes a folder; gives the delivery summary and the paths of the received messages."""
