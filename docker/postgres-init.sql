-- A second database beside Airflow's metadata DB: the agent factory's resource ledger and
-- the specialists' LangGraph checkpoints (ORCHESTRA_LEDGER_URL, ORCHESTRA_CHECKPOINT_URL).
CREATE DATABASE orchestra OWNER airflow;
