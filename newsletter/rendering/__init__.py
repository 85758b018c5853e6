"""Rendering: an edition and a reader's selection in, the HTML and text of an email (once per variant) out.

Jinja templates with a user override folder, Premailer once per variant, signed per-reader links."""
