{{
    config(
        materialized='incremental',
        unique_key=['window_epoch', 'antenna_id', 'device_id', 'app'],
        indexes=[{'columns': ['window_epoch']}],
    )
}}

with

events as (

    select * from {{ ref('int_device_usage__deduplicated') }}
    where event_at >= {{ epoch_to_instant(incremental_cutoff('window_epoch', window_seconds())) }}

),

aggregated as (

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

final as (

    select
        {{ epoch_to_timestamp('window_epoch') }} as window_start,
        window_epoch,
        antenna_id,
        device_id,
        app,
        bytes_total,
        event_count

    from aggregated

)

select * from final
