"""Stages: a stage maps records to records with one backend (see ``script`` and ``voice``)."""
