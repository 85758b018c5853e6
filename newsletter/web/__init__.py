"""Web: the subscribe, confirm, manage and unsubscribe pages, the public archive and the Atom feeds.

A Starlette app over the subscribers domain and the stored editions; it holds no SQL of its own."""
