"""CLI: the `newsletter` command, thin click commands over the library.

Options in, one library call, its result printed (tables or `--json`); library errors become one line, exit 1."""
