"""Evaluation harness: agent configurations × held-out tasks → results table and chart."""
