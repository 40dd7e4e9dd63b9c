{#- Bandwidth in use per antenna and window: bytes, bytes per second, devices seen. -#}
{{
    config(
        materialized='incremental',
        meta={'ingest_bucket': {'column': 'window_epoch', 'grain': window_seconds()}},
        unique_key=['window_epoch', 'antenna_id'],
        partition_by=ingest_partition_by('window_epoch'),
        indexes=[{'columns': ['window_epoch']}],
    )
}}

{%- set increment = ingest_increment(grain=window_seconds()) %}

with

usage as (

    select * from {{ ref('fct_usage_windowed') }}
    where {{ ingest_range_filter(increment, 'window_epoch') }}

),

per_antenna as (

    select
        window_start,
        window_epoch,
        antenna_id,
        {{ sum_bigint('bytes_total') }} as bytes_total,
        count(distinct device_id) as devices_seen

    from usage
    group by 1, 2, 3

),

final as (

    select
        window_start,
        window_epoch,
        antenna_id,
        bytes_total,
        devices_seen,
        cast(bytes_total as {{ type_double() }}) / {{ window_seconds() }} as bytes_per_second

    from per_antenna

)

select * from final
