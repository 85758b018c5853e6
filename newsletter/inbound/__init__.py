"""Mail that comes back: bounces (DSNs and older formats), complaints (ARF), auto-replies, mailto unsubscribes.

``verp`` signs the per-message envelope sender; ``classify`` is the pure classifier (bytes in, a verdict
out); ``process`` attributes a verdict to a reader and applies it in one transaction; ``listener`` (SMTP or
LMTP on aiosmtpd) and ``imap`` (a polled mailbox) are the two doors that feed it.
"""
