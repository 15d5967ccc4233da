"""Automation: jobs, sensors, schedules, declarative automation conditions and the executor choice."""
