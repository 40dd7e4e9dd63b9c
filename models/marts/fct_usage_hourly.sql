{#- the unique key's index also serves the bucket ranges (it leads with the bucket) -#}
{{
    config(
        materialized='incremental',
        meta={'ingest_additive': ingest_additive(), 'ingest_bucket': {'column': 'hour_epoch', 'grain': 3600}},
        unique_key=['hour_epoch', 'antenna_id', 'device_id', 'app'],
        partition_by=ingest_partition_by('hour_epoch'),
        indexes=[{'columns': ['hour_epoch', 'antenna_id', 'device_id', 'app'], 'unique': true}],
    )
}}

{#- On PostgreSQL an increment's new distinct events are added to the stored totals
    (macros/ingest_additive.sql); elsewhere every hour they touch is rebuilt whole. -#}

with

events as (

    select * from {{ ref('int_device_usage__deduplicated') }}
    where {{ ingest_fact_events_filter(3600) }}

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

totals as (

    {{ ingest_add_to_held('aggregated', ['hour_epoch', 'antenna_id', 'device_id', 'app'], ['bytes_total', 'event_count']) }}

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

    from totals

)

select * from final
