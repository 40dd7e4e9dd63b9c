{#- fct_network_activity_windowed has a row for every window with staged events below the high
    it was built to, with those events' bytes, and no other row. -#}
{%- set increment = ingest_test_increment('fct_network_activity_windowed', window_seconds()) %}

with

events as (

    select * from {{ ref('int_device_usage__deduplicated') }}
    where
        ingest_seq < {{ increment.high }}
        and {{ ingest_range_filter(increment, 'event_at', instant=true) }}

),

activity as (

    select * from {{ ref('fct_network_activity_windowed') }}

),

expected as (

    select
        window_epoch,
        {{ sum_bigint('bytes') }} as bytes_total

    from events
    group by 1

),

served as (

    select
        window_epoch,
        bytes_total

    from activity
    where {{ ingest_range_filter(increment, 'window_epoch') }}

),

{{ served_versus_staged(['window_epoch'], ['bytes_total']) }}
