"""Data: the neutral sample record and its ms-swift JSONL row, question templates, token counts."""
