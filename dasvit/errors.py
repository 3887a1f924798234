"""Errors a user can cause. The CLI turns them into one sentence and exit code 2."""


class UserError(Exception):
    """A mistake in what the user gave us (config, genotype, path, data): one sentence, exit code 2."""

    exit_code = 2


class ConfigError(UserError):
    """A configuration key that is unknown, of the wrong type, or impossible."""


class GenotypeError(UserError):
    """A genotype file that does not parse or does not describe a valid cell."""


class DataError(UserError):
    """A dataset that is missing or malformed."""


class RunDirError(UserError):
    """A run directory that does not exist, is not a run, or is busy."""


class DiskFullError(UserError):
    """No space left for a file the run must keep (a checkpoint): what was lost is nothing, and how to go on."""


class CheckpointError(UserError):
    """A checkpoint that cannot be used: damaged (with no earlier one to fall back on) or holding pickled code."""


class BudgetError(UserError):
    """A FLOPs or params budget that cannot be parsed or that no architecture of the space meets."""


# Under torchrun the launcher names a file in this environment variable; a rank that meets a user mistake
# leaves its sentence there, so that the launcher can say it (torchrun reports exit 2 as its own failure).
USER_ERROR_FILE = "DASVIT_USER_ERROR_FILE"


class TrainingDiverged(UserError):
    """A loss that is no longer a finite number: the run ends "failed" with one sentence naming the epoch,
    never "finished" (a too large learning rate, a broken input)."""

    @classmethod
    def of(cls, what: str, value: float) -> "TrainingDiverged":
        return cls(
            f"{what} is {value} (not a finite number): the run stops here. A learning rate too large for this "
            "network, or a broken input, makes a loss diverge; lower the learning rate or check the data and start "
            "a new run."
        )
