"""Airflow operators of the orchestra provider (thin adapters over ``runtime``)."""
