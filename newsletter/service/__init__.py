"""Service: the scheduled jobs of `newsletter serve` (fetch, daily, weekly, retry, housekeeping) and `status`.

Takes the settings and the stores; gives run records in words and the next fire times."""
