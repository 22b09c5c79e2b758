"""Shared security modules: JWT principals, URL rules, log redaction."""
