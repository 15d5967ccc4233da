"""Operations: jobs, sensors, schedules, declarative automation and the executor choice."""
