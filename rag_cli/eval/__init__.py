"""Evaluation: retrieval metrics on BEIR data, answer metrics on QA files, reports and baselines."""
