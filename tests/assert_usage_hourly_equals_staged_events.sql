{#- fct_usage_hourly holds, hour by hour, the bytes and event count of every antenna, device
    and app among the de-duplicated staged events below the high it was built to. -#}
{%- set increment = ingest_test_increment('fct_usage_hourly', 3600) %}

with

events as (

    select * from {{ ref('int_device_usage__deduplicated') }}
    where
        ingest_seq < {{ increment.high }}
        and {{ ingest_range_filter(increment, 'event_at', instant=true) }}

),

usage as (

    select * from {{ ref('fct_usage_hourly') }}

),

expected as (

    select
        hour_epoch,
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
        hour_epoch,
        antenna_id,
        device_id,
        app,
        bytes_total,
        event_count

    from usage
    where {{ ingest_range_filter(increment, 'hour_epoch') }}

),

{{ served_versus_staged(['hour_epoch', 'antenna_id', 'device_id', 'app'], ['bytes_total', 'event_count']) }}
