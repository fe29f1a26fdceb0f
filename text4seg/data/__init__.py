"""Data: what crosses stages: the neutral sample record and its ms-swift JSONL row, queries, result records,
overlays, RLE, images opened safely, token counts, mixing and statistics of built files."""
