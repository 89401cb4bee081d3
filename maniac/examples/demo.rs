fn main() {
    let rt = maniac::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let t = std::time::Instant::now();
    let n = rt.block_on(async {
        let mut hs = Vec::new();
        for i in 0..100_000u64 {
            hs.push(maniac::spawn(async move {
                maniac::task::yield_now().await;
                i
            }));
        }
        let mut s = 0;
        for h in hs {
            s += h.await.unwrap();
        }
        s
    });
    println!("{n} in {:?}", t.elapsed());
    let p = rt.block_on(async { maniac::spawn(async { panic!("boom") }).await });
    println!("{:?}", p);
    let cur = maniac::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    println!(
        "{}",
        cur.block_on(async {
            maniac::spawn(async { 5 }).await.unwrap()
                + maniac::task::spawn_blocking(|| 3).await.unwrap()
        })
    );
}
