"""The LookML project in ``looker/``, generated from the dbt project so that it cannot drift.

- ``dbt_project``: what the generator reads from dbt's manifest (``dbt parse``, no
  database): the models the dashboard exposures list, their descriptions, declared column
  types, keys (from the uniqueness tests), joins (from the relationships tests) and the
  measures their columns ask for (``config.meta.looker.measures``);
- ``lookml``: views, the model with its explores, and ``manifest.lkml``, written with lkml;
- ``dashboards``: the two LookML dashboards, twins of the Superset dashboards;
- ``validate``: the checks the tests run (lkml parses, every field names a column of the
  built table with a compatible type, every exposure's model has a view);
- ``generate``: ``antenna-elt looker [--check]`` (``make looker``) writes or checks ``looker/``.
"""
