{#- One row per distinct event. Raw keeps one row per Kafka offset, so a producer's re-send
    of the same event appears twice there; it is one event here. Distinct events never share
    all five fields (the simulator guarantees it; real antennas report at most once per
    device, antenna, app and second). -#}
{#- config.meta.ingest_bucket: the rows its generic tests check in the 'touched' scope
    (macros/ingest_test_scope.sql) -#}
{{ config(meta={'ingest_bucket': {'column': 'event_at', 'kind': 'instant', 'grain': window_seconds()}}) }}

with

events as (

    select * from {{ ref('stg_raw__device_usage') }}

),

deduplicated as (

    select
        event_epoch,
        event_at,
        device_id,
        antenna_id,
        app,
        bytes,
        count(*) as copies_received,
        min(ingested_at) as first_ingested_at,
        min(ingest_seq) as ingest_seq

    from events
    group by 1, 2, 3, 4, 5, 6

),

bucketed as (

    select
        {{ bucket_epoch('event_epoch', window_seconds()) }} as window_epoch,
        {{ bucket_epoch('event_epoch', 3600) }} as hour_epoch,
        deduplicated.*

    from deduplicated

)

select * from bucketed
