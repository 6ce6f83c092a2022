"""Pipeline stages: each module has one public entry function taking a config object."""
