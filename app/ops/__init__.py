"""Operator commands' work: status, export/import, sample deliveries."""
