"""Pure workflow logic: models, analysis, routing, sync policy, merging, quality gate and
load balancing. Imports neither Airflow nor LangGraph."""
