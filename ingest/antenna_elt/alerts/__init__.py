"""Alerts built on the marts (quota breaches), delivered exactly once."""
