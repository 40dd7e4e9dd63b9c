{#- fct_user_usage_hourly holds, hour by hour, every device's usage and event count among the
    de-duplicated staged events below the high it was built to. -#}
{%- set increment = ingest_test_increment('fct_user_usage_hourly', 3600) %}

with

events as (

    select * from {{ ref('int_device_usage__deduplicated') }}
    where
        ingest_seq < {{ increment.high }}
        and {{ ingest_range_filter(increment, 'event_at', instant=true) }}

),

user_usage as (

    select * from {{ ref('fct_user_usage_hourly') }}

),

expected as (

    select
        hour_epoch,
        device_id,
        {{ sum_bigint('bytes') }} as usage_bytes,
        count(*) as event_count

    from events
    group by 1, 2

),

served as (

    select
        hour_epoch,
        device_id,
        usage_bytes,
        event_count

    from user_usage
    where {{ ingest_range_filter(increment, 'hour_epoch') }}

),

{{ served_versus_staged(['hour_epoch', 'device_id'], ['usage_bytes', 'event_count']) }}
