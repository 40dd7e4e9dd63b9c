{#- Bytes and events of every second that holds an event, with the second's window: what
    fct_devices_active_recent sums over its look-back (600 rows for 10 minutes, however many
    events they hold). The unique key's index leads with the window: it serves the bucket
    ranges and the newest second. -#}
{{
    config(
        materialized='incremental',
        meta={'ingest_additive': ingest_additive(), 'ingest_bucket': {'column': 'window_epoch', 'grain': window_seconds()}},
        unique_key=['window_epoch', 'event_epoch'],
        partition_by=ingest_partition_by('window_epoch'),
        indexes=[{'columns': ['window_epoch', 'event_epoch'], 'unique': true}],
    )
}}

{#- On PostgreSQL an increment's new distinct events are added to the stored totals
    (macros/ingest_additive.sql); elsewhere every window they touch is rebuilt whole. -#}

with

events as (

    select * from {{ ref('int_device_usage__deduplicated') }}
    where {{ ingest_fact_events_filter(window_seconds()) }}

),

aggregated as (

    select
        window_epoch,
        event_epoch,
        {{ sum_bigint('bytes') }} as bytes_total,
        count(*) as event_count

    from events
    group by 1, 2

),

totals as (

    {{ ingest_add_to_held('aggregated', ['window_epoch', 'event_epoch'], ['bytes_total', 'event_count']) }}

),

final as (

    select
        window_epoch,
        event_epoch,
        bytes_total,
        event_count

    from totals

)

select * from final
