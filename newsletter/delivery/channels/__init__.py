"""Chat channels: an edition as one chat message, posted through Apprise and classified like an SMTP reply."""
