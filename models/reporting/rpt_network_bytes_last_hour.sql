{#- The Network, live dashboard's bytes: mart `bytes` (5-minute windows) over the last
    var('recent_minutes') of data, each row labelled for a person: the antenna's short id,
    the user's email (a device missing from user metadata keeps its id), or the app. -#}

with

windowed_bytes as (

    select * from {{ ref('bytes') }}
    where {{ within_last_minutes_of_data(adapter.quote('timestamp'), ref('bytes'), var('recent_minutes')) }}

),

users as (

    select * from {{ ref('dim_users') }}

),

final as (

    select
        windowed_bytes.{{ adapter.quote('timestamp') }} as window_start,
        windowed_bytes.type,
        windowed_bytes.id,
        case
            when windowed_bytes.type = 'antenna_bytes_total' then {{ antenna_label('windowed_bytes.id') }}
            else coalesce(users.email, windowed_bytes.id)
        end as label,
        windowed_bytes.value as bytes

    from windowed_bytes
    left join users
        on
            windowed_bytes.type = 'id_bytes_total'
            and windowed_bytes.id = users.user_id

)

select * from final
