"""Evaluation: the metrics of the field and the join of results with the built ground truth."""
