"""The SQL store: the system of record for devices, campaigns, trials and results."""
