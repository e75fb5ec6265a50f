"""The scheduler: scores each schedule's counter-local yesterday once a day, re-scores it at D+3 and
uploads the level-4+ visits of finished runs (README "Schedules")."""
