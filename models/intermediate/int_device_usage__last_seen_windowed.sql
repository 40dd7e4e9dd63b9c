{#- The last event of every device in every window: a device is active after a moment if
    one of its windows ending after it holds an event after it, so
    fct_devices_active_recent reads two or three windows of devices, not their events. The
    unique key's index leads with the window: it serves the bucket ranges. -#}
{{
    config(
        materialized='incremental',
        meta={'ingest_additive': ingest_additive(), 'ingest_bucket': {'column': 'window_epoch', 'grain': window_seconds()}},
        unique_key=['window_epoch', 'device_id'],
        partition_by=ingest_partition_by('window_epoch'),
        indexes=[{'columns': ['window_epoch', 'device_id'], 'unique': true}],
    )
}}

{#- On PostgreSQL an increment's new distinct events move a device's last event forward
    (the later of the held one and the increment's); elsewhere every window they touch is
    rebuilt whole. -#}

with

events as (

    select * from {{ ref('int_device_usage__deduplicated') }}
    where {{ ingest_fact_events_filter(window_seconds()) }}

),

latest as (

    select
        window_epoch,
        device_id,
        max(event_epoch) as last_event_epoch

    from events
    group by 1, 2

),

merged as (

    {{ ingest_later_of_held('latest', ['window_epoch', 'device_id'], ['last_event_epoch']) }}

),

final as (

    select
        window_epoch,
        device_id,
        last_event_epoch

    from merged

)

select * from final
