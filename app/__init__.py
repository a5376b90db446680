"""BitByBit webhook receiver: a durable event log and the SQL projections built from it."""
