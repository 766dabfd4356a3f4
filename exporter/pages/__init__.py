"""The static HTML pages a job writes: the audit report in the export, the
review page in the workspace. Both read offline, images embedded."""
