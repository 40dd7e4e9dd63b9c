{{
    config(
        materialized='incremental',
        meta={'ingest_bucket': {'column': 'hour_epoch', 'grain': 3600}},
        unique_key=['hour_epoch', 'antenna_id', 'device_id', 'app'],
        partition_by=ingest_partition_by('hour_epoch'),
        indexes=[{'columns': ['hour_epoch']}],
    )
}}

{%- set increment = ingest_increment(grain=3600) %}

with

events as (

    select * from {{ ref('int_device_usage__deduplicated') }}
    where
        ingest_seq < {{ increment.high }}
        and {{ ingest_range_filter(increment, 'event_at', instant=true) }}

),

aggregated as (

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

final as (

    select
        {{ epoch_to_timestamp('hour_epoch') }} as hour_start,
        hour_epoch,
        antenna_id,
        device_id,
        app,
        bytes_total,
        event_count

    from aggregated

)

select * from final
