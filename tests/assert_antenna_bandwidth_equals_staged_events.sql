{#- fct_antenna_bandwidth_windowed holds, window by window, the bytes and distinct devices of
    every antenna among the de-duplicated staged events below the high it was built to. -#}
{%- set increment = ingest_test_increment('fct_antenna_bandwidth_windowed', window_seconds()) %}

with

events as (

    select * from {{ ref('int_device_usage__deduplicated') }}
    where
        ingest_seq < {{ increment.high }}
        and {{ ingest_range_filter(increment, 'event_at', instant=true) }}

),

bandwidth as (

    select * from {{ ref('fct_antenna_bandwidth_windowed') }}

),

expected as (

    select
        window_epoch,
        antenna_id,
        {{ sum_bigint('bytes') }} as bytes_total,
        count(distinct device_id) as devices_seen

    from events
    group by 1, 2

),

served as (

    select
        window_epoch,
        antenna_id,
        bytes_total,
        devices_seen

    from bandwidth
    where {{ ingest_range_filter(increment, 'window_epoch') }}

),

{{ served_versus_staged(['window_epoch', 'antenna_id'], ['bytes_total', 'devices_seen']) }}
