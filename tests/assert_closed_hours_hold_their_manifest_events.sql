-- Every hour the lake ingestor closed holds exactly the events its manifest lists: a file
-- missing from the lake, or one written into a closed hour without updating its manifest,
-- fails here (DuckDB target only, see dbt_project.yml).
with

closed_hours as (

    select * from {{ ref('stg_lake__closed_hours') }}

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
