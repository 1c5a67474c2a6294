"""When users are active: activity series, sessions, cohorts, forecasts, trend tests."""
