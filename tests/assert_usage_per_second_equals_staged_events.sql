{#- int_device_usage__per_second holds, second by second, the bytes and event count of the
    de-duplicated staged events below the high it was built to. -#}
{%- set increment = ingest_test_increment('int_device_usage__per_second', window_seconds()) %}

with

events as (

    select * from {{ ref('int_device_usage__deduplicated') }}
    where
        ingest_seq < {{ increment.high }}
        and {{ ingest_range_filter(increment, 'event_at', instant=true) }}

),

seconds as (

    select * from {{ ref('int_device_usage__per_second') }}

),

expected as (

    select
        window_epoch,
        event_epoch,
        {{ sum_bigint('bytes') }} as bytes_total,
        count(*) as event_count

    from events
    group by 1, 2

),

served as (

    select
        window_epoch,
        event_epoch,
        bytes_total,
        event_count

    from seconds
    where {{ ingest_range_filter(increment, 'window_epoch') }}

),

{{ served_versus_staged(['window_epoch', 'event_epoch'], ['bytes_total', 'event_count']) }}
