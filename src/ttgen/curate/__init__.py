"""Curation: trial folders -> trajectory records (provenance), decontamination, filters, near-duplicate removal."""
