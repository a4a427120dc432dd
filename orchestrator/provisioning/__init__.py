"""Installing, starting, upgrading and removing agents on devices over SSH (Fabric).

The shell text run on a device and the files written there are built by plain functions
(`commands`, `device_files`); `installer` runs them over a connection from `ssh`.
"""


class ProvisionError(RuntimeError):
    """A provisioning step that failed, with a message the user can act on."""
