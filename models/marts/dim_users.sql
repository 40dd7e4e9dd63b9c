with

users as (

    select * from {{ ref('stg_seeds__user_metadata') }}

)

select * from users
