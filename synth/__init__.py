"""Synthesis: docs → tasks → rollouts → backward construction → filter → dataset."""
