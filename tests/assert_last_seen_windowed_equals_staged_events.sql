{#- int_device_usage__last_seen_windowed holds, window by window, each device's last event
    among the de-duplicated staged events below the high it was built to. -#}
{%- set increment = ingest_test_increment('int_device_usage__last_seen_windowed', window_seconds()) %}

with

events as (

    select * from {{ ref('int_device_usage__deduplicated') }}
    where
        ingest_seq < {{ increment.high }}
        and {{ ingest_range_filter(increment, 'event_at', instant=true) }}

),

last_seen as (

    select * from {{ ref('int_device_usage__last_seen_windowed') }}

),

expected as (

    select
        window_epoch,
        device_id,
        max(event_epoch) as last_event_epoch

    from events
    group by 1, 2

),

served as (

    select
        window_epoch,
        device_id,
        last_event_epoch

    from last_seen
    where {{ ingest_range_filter(increment, 'window_epoch') }}

),

{{ served_versus_staged(['window_epoch', 'device_id'], ['last_event_epoch']) }}
