{#- bytes holds, window by window, the antenna, device and app totals of the de-duplicated
    staged events below the high it was built to: no window, key or byte missing or doubled,
    whatever order the events arrived in. -#}
{%- set increment = ingest_test_increment('bytes', window_seconds()) %}

with

events as (

    select * from {{ ref('int_device_usage__deduplicated') }}
    where
        ingest_seq < {{ increment.high }}
        and {{ ingest_range_filter(increment, 'event_at', instant=true) }}

),

served_rows as (

    select * from {{ ref('bytes') }}

),

expected as (

    select
        window_epoch,
        'antenna_bytes_total' as type,
        antenna_id as id,
        {{ sum_bigint('bytes') }} as value
    from events
    group by 1, 2, 3

    union all

    select
        window_epoch,
        'id_bytes_total' as type,
        device_id as id,
        {{ sum_bigint('bytes') }} as value
    from events
    group by 1, 2, 3

    union all

    select
        window_epoch,
        'app_bytes_total' as type,
        app as id,
        {{ sum_bigint('bytes') }} as value
    from events
    group by 1, 2, 3

),

served as (

    select
        {{ epoch_seconds(adapter.quote('timestamp')) }} as window_epoch,
        type,
        id,
        value
    from served_rows
    where {{ ingest_range_filter(increment, epoch_seconds(adapter.quote('timestamp'))) }}

),

{{ served_versus_staged(['window_epoch', 'type', 'id'], ['value']) }}
