{#- bytes_hourly's antenna and app totals equal the de-duplicated staged events, hour by
    hour: nothing lost or counted twice between staging and the serving table. -#}

with

events as (

    select * from {{ ref('int_device_usage__deduplicated') }}

),

served as (

    select * from {{ ref('bytes_hourly') }}

),

staged_per_hour as (

    select
        {{ epoch_to_timestamp('hour_epoch') }} as hour_start,
        {{ sum_bigint('bytes') }} as bytes_total

    from events
    group by 1

),

served_per_hour as (

    select
        {{ adapter.quote('timestamp') }} as hour_start,
        type,
        {{ sum_bigint('value') }} as bytes_total

    from served
    where type in ('antenna_bytes_total', 'app_bytes_total')
    group by 1, 2

),

compared as (

    select
        staged_per_hour.hour_start,
        served_per_hour.type,
        staged_per_hour.bytes_total as staged_bytes,
        served_per_hour.bytes_total as served_bytes

    from staged_per_hour
    left join served_per_hour
        on staged_per_hour.hour_start = served_per_hour.hour_start

)

select * from compared
where
    served_bytes is null
    or served_bytes != staged_bytes
