"""Airflow hooks of the orchestra provider."""
