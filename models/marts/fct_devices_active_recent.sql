{#- Devices active in the last var('active_minutes') minutes, counted back from the newest
    event in the data (not the wall clock), so that a build is reproducible and a simulated
    clock works. One row.
    It reads the per-second totals and each device's last event per window, not the events
    (a look-back at 10k events/s holds 6M of them): the windows that end after the
    look-back starts, and the seconds in it. -#}

{%- set active = var('active_minutes') * 60 -%}

with

seconds as (

    select * from {{ ref('int_device_usage__per_second') }}

),

last_seen as (

    select * from {{ ref('int_device_usage__last_seen_windowed') }}

),

users as (

    select * from {{ ref('dim_users') }}

),

newest_window as (

    select max(window_epoch) as window_epoch from seconds

),

as_of as (

    select max(seconds.event_epoch) as as_of_epoch
    from seconds
    where seconds.window_epoch = (select newest_window.window_epoch from newest_window)

),

recent_devices as (

    select distinct last_seen.device_id
    from last_seen
    where
        last_seen.window_epoch > (select as_of.as_of_epoch from as_of) - {{ active }} - {{ window_seconds() }}
        and last_seen.last_event_epoch > (select as_of.as_of_epoch from as_of) - {{ active }}

),

recent_seconds as (

    select seconds.bytes_total
    from seconds
    where
        seconds.window_epoch > (select as_of.as_of_epoch from as_of) - {{ active }} - {{ window_seconds() }}
        and seconds.event_epoch > (select as_of.as_of_epoch from as_of) - {{ active }}

),

devices as (

    select
        count(*) as devices_active,
        count(case when users.user_id is null then 1 end) as unknown_devices_active

    from recent_devices
    left join users
        on recent_devices.device_id = users.user_id

),

recent_bytes as (

    select {{ sum_bigint('recent_seconds.bytes_total') }} as bytes_total
    from recent_seconds

),

final as (

    select
        {{ epoch_to_timestamp('as_of.as_of_epoch') }} as as_of,
        {{ var('active_minutes') }} as active_minutes,
        devices.devices_active,
        devices.unknown_devices_active,
        recent_bytes.bytes_total

    from as_of
    cross join devices
    cross join recent_bytes

)

select * from final
