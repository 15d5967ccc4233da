"""A weekly RULER evaluation of the configured model (the generator resource's model, or the eval profile's)."""

import dagster as dg

from lc_assets.defs.automation.jobs import RULER_EVAL_ASSETS, ruler_eval_job
from lc_assets.defs.automation.resources import OpsFoldersResource
from lc_assets.defs.automation.watched_folders import profile_run_config


@dg.schedule(
    job=ruler_eval_job,
    cron_schedule="0 3 * * 1",  # Mondays 03:00 UTC: off-peak for the GPU the eval shares with generation
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,  # a weekly GPU job is opted into, not started by a deploy
    description="Weekly RULER scores of the configured model (ops_folders.eval_profile sets the run config).",
)
def ruler_eval_weekly_schedule(context: dg.ScheduleEvaluationContext, ops_folders: OpsFoldersResource) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=None,
        run_config=profile_run_config(ops_folders.eval_profile, RULER_EVAL_ASSETS),
        tags={"lc_assets/trigger": "weekly"},
    )
