{#- fct_usage_windowed holds, window by window, the bytes and event count of every antenna,
    device and app among the de-duplicated staged events below the high it was built to. -#}
{%- set increment = ingest_test_increment('fct_usage_windowed', window_seconds()) %}

with

events as (

    select * from {{ ref('int_device_usage__deduplicated') }}
    where
        ingest_seq < {{ increment.high }}
        and {{ ingest_range_filter(increment, 'event_at', instant=true) }}

),

usage as (

    select * from {{ ref('fct_usage_windowed') }}

),

expected as (

    select
        window_epoch,
        antenna_id,
        device_id,
        app,
        {{ sum_bigint('bytes') }} as bytes_total,
        count(*) as event_count

    from events
    group by 1, 2, 3, 4

),

served as (

    select
        window_epoch,
        antenna_id,
        device_id,
        app,
        bytes_total,
        event_count

    from usage
    where {{ ingest_range_filter(increment, 'window_epoch') }}

),

{{ served_versus_staged(['window_epoch', 'antenna_id', 'device_id', 'app'], ['bytes_total', 'event_count']) }}
