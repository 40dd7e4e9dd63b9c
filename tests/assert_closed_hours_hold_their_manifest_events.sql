-- Every hour the lake ingestor closed holds exactly the events its manifest lists: a file
-- missing from the lake, or one written into a closed hour without updating its manifest,
-- fails here (DuckDB target only, see dbt_project.yml). A manifest rewritten after this build
-- began (late events added a file the build has not registered) waits for the next build.
with

build as (

    select started_epoch
    from {{ ingest_state_relation('ingest_builds') }}
    where invocation_id = '{{ invocation_id }}'

),

closed_hours as (

    select * from {{ ref('stg_lake__closed_hours') }}
    where {{ epoch_seconds("updated_at") }} < (select max(build.started_epoch) from build)

),

events as (

    select * from {{ ref('stg_raw__device_usage') }}

),

events_per_hour as (

    select
        {{ epoch_to_timestamp(bucket_epoch("event_epoch", 3600)) }} as hour_start,
        count(*) as event_count

    from events
    group by 1

),

final as (

    select
        closed_hours.hour_start,
        closed_hours.event_count as manifest_event_count,
        coalesce(events_per_hour.event_count, 0) as lake_event_count

    from closed_hours
    left join events_per_hour
        on closed_hours.hour_start = events_per_hour.hour_start
    where closed_hours.event_count != coalesce(events_per_hour.event_count, 0)

)

select * from final
