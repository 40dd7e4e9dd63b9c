{#- Every row of user_quota_limit is a user-hour strictly over quota. -#}

select *
from {{ ref('user_quota_limit') }}
where usage <= quota
