"""Matching: papers in, (paper, topic, strength, reasons) matches and trending scores out.

Keyword and category rules, TF-IDF and embedding similarity behind one `Matcher` interface; evaluate, suggest."""
